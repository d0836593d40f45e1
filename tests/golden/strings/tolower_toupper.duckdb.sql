SELECT "a", "b", "c" FROM (SELECT LOWER('NetAtlas-42') AS "a", UPPER('NetAtlas-42') AS "b", UPPER('') AS "c") AS _result LIMIT 500001
