SELECT "arr", "arr_tan" FROM (SELECT *, NETATLAS_SERIES_TAN(CAST("arr" AS TEXT)) AS "arr_tan" FROM (SELECT CAST('[-1,0,1]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
