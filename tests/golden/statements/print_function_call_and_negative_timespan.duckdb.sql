SELECT "print_0", "d" FROM (SELECT CAST(LENGTH('hello') AS BIGINT) AS "print_0", -50000000 AS "d") AS _result LIMIT 500001
