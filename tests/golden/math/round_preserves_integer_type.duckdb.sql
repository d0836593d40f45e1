SELECT "a", "b", "c" FROM (SELECT CAST(ROUND(17, 0) AS BIGINT) AS "a", 'long' AS "b", 'real' AS "c") AS _result LIMIT 500001
