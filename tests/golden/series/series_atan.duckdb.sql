SELECT "arr", "arr_atan" FROM (SELECT *, NETATLAS_SERIES_ATAN(CAST("arr" AS TEXT)) AS "arr_atan" FROM (SELECT CAST('[-1,0,1]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
