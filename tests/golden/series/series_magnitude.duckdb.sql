SELECT "arr", "series_magnitude" FROM (SELECT *, NETATLAS_SERIES_MAGNITUDE(CAST("arr" AS TEXT)) AS "series_magnitude" FROM (SELECT CAST('[1,2,3,4]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
