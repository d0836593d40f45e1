SELECT "print_0" FROM (SELECT 6 AS "print_0") AS _result LIMIT 500001
