-- The portfolio had no index on `ref`, and much looks an entry up by it:
-- the screening keys a program's ending, an edit, an import's update and a
-- resolution lock (PortfolioScreener.lockKeys), what an overlap shows of the
-- other program (sql/0007, sql/0014), the pairs an edit or an import scores
-- again (sql/0014), an import's scoring of its own rows. Each read the whole
-- table: at a million entries about 90 ms a lookup, taken while the program's
-- row and keys were locked (docs/performance.md, "Lookups by ref").
-- Building it locks the table against writes for as long as it takes: a few
-- seconds at a million entries.
CREATE INDEX portfolio_ref ON portfolio (ref, country);
