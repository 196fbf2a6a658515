-- What one comparison of two texts' trigrams costs, apart from reading rows
-- (docs/performance.md, "Text similarity from trigrams made once"). Run on a
-- database seeded by screening-bench:
--   psql 'host=/tmp/pbc-bench/socket port=55432 user=postgres dbname=pbc_bench' -f bench/trigram-pairs.sql
SET jit = off;
\timing on
CREATE TEMP TABLE s AS SELECT trigrams FROM portfolio OFFSET 7 LIMIT 1;
CREATE TEMP TABLE sample AS SELECT trigrams FROM portfolio LIMIT 20000;
SELECT count(*) FROM sample;
-- reading the arrays
SELECT sum(cardinality(p.trigrams)) FROM sample p, s;
-- pbc's similarity
SELECT sum(trigram_similarity(p.trigrams, s.trigrams)) FROM sample p, s;
-- intarray's intersection alone
SELECT sum(intarray.icount(p.trigrams OPERATOR(intarray.&) s.trigrams)) FROM sample p, s;
-- pg_trgm's similarity on the texts, which makes both texts' trigrams again
SELECT sum(similarity(p.body, (SELECT body FROM portfolio OFFSET 7 LIMIT 1))) FROM (SELECT body FROM portfolio LIMIT 20000) p;
