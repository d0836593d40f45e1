SELECT "a", "b", "c" FROM (SELECT REVERSE('netatlas') AS "a", REVERSE('') AS "b", REVERSE('ab c') AS "c") AS _result LIMIT 500001
