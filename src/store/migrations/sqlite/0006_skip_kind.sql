-- Why a skipped delivery was skipped (domain::SkipKind): `mapping` (the mapping said so; a
-- later plan of the same mapping and key replaces it, a replay never sends it),
-- `unmet_need` (the delivery it needed was not made; a replay of that one re-arms it) or
-- `superseded` (a later one of the same mapping was delivered). NULL unless skipped.
ALTER TABLE deliveries ADD COLUMN skip_kind TEXT;

-- Skips stored before this column: the superseded ones say so in their reason, every other
-- one waited for a delivery that was not made.
UPDATE deliveries
   SET skip_kind = CASE WHEN last_error LIKE 'superseded:%' THEN 'superseded' ELSE 'unmet_need' END
 WHERE status = 'skipped';
