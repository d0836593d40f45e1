SELECT "a", "c" FROM (VALUES (CAST(1 AS BIGINT), 'x', CAST(0.5 AS DOUBLE), TRUE)) AS "_v1"("a", "b", "c", "d") LIMIT 500001
