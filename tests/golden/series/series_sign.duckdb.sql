SELECT "arr", "arr_sign" FROM (SELECT *, NETATLAS_SERIES_SIGN(CAST("arr" AS TEXT)) AS "arr_sign" FROM (SELECT CAST('[-6,0,8]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
