SELECT "a", "b" FROM (SELECT *, ("a" + 5) AS "b" FROM (SELECT "a" FROM (VALUES (CAST(1 AS BIGINT)), (CAST(2 AS BIGINT))) AS "_v1"("a")) AS _q3) AS _result LIMIT 500001
