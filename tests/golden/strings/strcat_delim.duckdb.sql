SELECT "a", "b", "c" FROM (SELECT CONCAT_WS('-', 'a', 'b', 'c') AS "a", CONCAT_WS(', ', 'x', COALESCE(CAST(42 AS TEXT), '')) AS "b", CONCAT_WS('', 'p', 'q') AS "c") AS _result LIMIT 500001
