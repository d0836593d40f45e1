SELECT "a", "print_1", "c" FROM (SELECT 10 AS "a", 20 AS "print_1", TRUE AS "c") AS _result LIMIT 500001
