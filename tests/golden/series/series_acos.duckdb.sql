SELECT "arr", "arr_acos" FROM (SELECT *, NETATLAS_SERIES_ACOS(CAST("arr" AS TEXT)) AS "arr_acos" FROM (SELECT CAST('[-1,0,1]' AS JSON) AS "arr") AS _q1) AS _result LIMIT 500001
