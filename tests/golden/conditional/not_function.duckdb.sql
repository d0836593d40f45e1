SELECT "a", "b", "c" FROM (SELECT NOT (TRUE) AS "a", NOT ((('x' IS NULL) OR ('x' = ''))) AS "b", NOT (((1 > 2) AND (3 > 2))) AS "c") AS _result LIMIT 500001
