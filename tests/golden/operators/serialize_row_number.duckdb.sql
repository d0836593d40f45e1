SELECT "Name", "Rn" FROM (SELECT *, CAST(((ROW_NUMBER() OVER () - 1) + 1) AS BIGINT) AS "Rn" FROM (SELECT "Name" FROM (VALUES ('c'), ('a'), ('b')) AS "_v1"("Name")) AS _q2) AS _result LIMIT 500001
