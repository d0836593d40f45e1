SELECT "Category", "Amount" FROM (VALUES ('a', CAST(5 AS BIGINT)), ('b', CAST(8 AS BIGINT))) AS "_v1"("Category", "Amount") LIMIT 500001
