SELECT "arr", "arr_abs" FROM (SELECT *, NETATLAS_SERIES_ABS(CAST("arr" AS TEXT)) AS "arr_abs" FROM (SELECT CAST('[-6.5,0,8.2]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
