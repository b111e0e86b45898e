-- How often an event failed to apply, and since when: operators see which failures are new,
-- and a retry that fails again counts on.
ALTER TABLE projection_failures ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 1;
ALTER TABLE projection_failures ADD COLUMN IF NOT EXISTS first_failed_at timestamptz NOT NULL DEFAULT now();
