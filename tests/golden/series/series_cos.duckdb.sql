SELECT "arr", "arr_cos" FROM (SELECT *, NETATLAS_SERIES_COS(CAST("arr" AS TEXT)) AS "arr_cos" FROM (SELECT CAST('[-1,0,1]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
