SELECT "arr", "arr_sin" FROM (SELECT *, NETATLAS_SERIES_SIN(CAST("arr" AS TEXT)) AS "arr_sin" FROM (SELECT CAST('[-1,0,1]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
