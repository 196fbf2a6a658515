-- Trigram similarity, for screening titles and descriptions for overlap,
-- and GiST operator classes for plain columns, for exclusion constraints
-- that combine an id with a date range. Both are trusted extensions: a
-- database owner may create them without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gist;
