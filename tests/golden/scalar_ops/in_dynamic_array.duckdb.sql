SELECT "a", "b", "c" FROM (SELECT (2 IN (1, 2, 3)) AS "a", ('z' IN ('x', 'y')) AS "b", (LOWER('Y') IN (LOWER('x'), LOWER('y'))) AS "c") AS _result LIMIT 500001
