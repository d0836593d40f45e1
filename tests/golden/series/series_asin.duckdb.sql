SELECT "arr", "arr_asin" FROM (SELECT *, NETATLAS_SERIES_ASIN(CAST("arr" AS TEXT)) AS "arr_asin" FROM (SELECT CAST('[-1,0,1]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
