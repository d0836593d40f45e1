SELECT "print_0", "print_1", "print_2" FROM (SELECT 2 AS "print_0", 'x' AS "print_1", CAST(2.5 AS DOUBLE) AS "print_2") AS _result LIMIT 500001
