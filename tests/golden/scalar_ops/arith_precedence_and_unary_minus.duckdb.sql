SELECT "a", "b", "c", "d", "e", "f" FROM (SELECT 14 AS "a", 20 AS "b", ((20 // 2) // 5) AS "c", -(-2) AS "d", 3 AS "e", -6 AS "f") AS _result LIMIT 500001
