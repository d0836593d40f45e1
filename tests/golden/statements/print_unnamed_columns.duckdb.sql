SELECT "print_0", "print_1" FROM (SELECT 3 AS "print_0", 'x' AS "print_1") AS _result LIMIT 500001
