-- An activity's budgets were summed in the first currency it named, and
-- those in any other currency were left out of the who-does-what-where
-- report, which gives budgets per currency. An activity now keeps a sum per
-- currency, in the order the currencies are first named:
-- [{"currency": "USD", "amount": "1500000.00"}, {"currency": "EUR", ...}].
-- The amounts dropped before were not kept; importing the file again takes
-- them (docs/import.md, "Budgets in the report").
-- Each a currency code and an amount to the cent, as the columns it replaces
-- were constrained.
ALTER TABLE activities ADD COLUMN budgets jsonb NOT NULL DEFAULT '[]' CONSTRAINT activity_budgets_well_formed CHECK (
    jsonb_typeof(budgets) = 'array'
    AND NOT jsonb_path_exists(budgets, '$[*] ? (!(@.currency like_regex "^[A-Z]{3}$") || !(@.amount.type() == "string") || !(@.amount like_regex "^[0-9]+\\.[0-9]{2}$"))'));

UPDATE activities SET budgets = jsonb_build_array(jsonb_build_object('currency', budget_currency, 'amount', budget_amount::text))
WHERE budget_amount IS NOT NULL AND budget_currency IS NOT NULL;

ALTER TABLE activities DROP COLUMN budget_amount, DROP COLUMN budget_currency;
