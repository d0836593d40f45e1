SELECT "arr", "series_sum" FROM (SELECT *, NETATLAS_SERIES_SUM(CAST("arr" AS TEXT)) AS "series_sum" FROM (SELECT CAST('[1,2,3,4]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
