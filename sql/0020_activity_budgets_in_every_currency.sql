-- An activity's budgets were summed in the first currency it named, and
-- those in any other currency were left out of the who-does-what-where
-- report, which gives budgets per currency. An activity now keeps a sum per
-- currency, in the order the currencies are first named:
-- [{"currency": "USD", "amount": "1500000.00"}, {"currency": "EUR", ...}].
-- The amounts dropped before were not kept; importing the file again takes
-- them (docs/import.md, "Budgets in the report").
ALTER TABLE activities ADD COLUMN budgets jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(budgets) = 'array');

UPDATE activities SET budgets = jsonb_build_array(jsonb_build_object('currency', budget_currency, 'amount', budget_amount::text))
WHERE budget_amount IS NOT NULL AND budget_currency IS NOT NULL;

ALTER TABLE activities DROP COLUMN budget_amount, DROP COLUMN budget_currency;
