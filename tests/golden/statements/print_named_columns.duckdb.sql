SELECT "x", "y" FROM (SELECT 1 AS "x", 'a' AS "y") AS _result LIMIT 500001
