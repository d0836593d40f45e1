SELECT "a", "b", "c", "d", "e", "f" FROM (SELECT 'int' AS "a", 'int' AS "b", 'timespan' AS "c", 'int' AS "d", 'long' AS "e", 'int' AS "f") AS _result LIMIT 500001
