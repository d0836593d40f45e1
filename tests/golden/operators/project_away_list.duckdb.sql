SELECT "a", "c" FROM (SELECT "a", "c" FROM (SELECT "a", "b", "c", "d" FROM (VALUES (CAST(1 AS BIGINT), 'x', CAST(0.5 AS DOUBLE), TRUE)) AS "_v1"("a", "b", "c", "d")) AS _q2) AS _result LIMIT 500001
