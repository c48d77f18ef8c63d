-- transfer leases and re-drives

ALTER TABLE transfers ADD COLUMN lease_token text;

ALTER TABLE transfers ADD COLUMN lease_expires_at timestamptz;

ALTER TABLE transfers ADD COLUMN redrives integer NOT NULL DEFAULT 0;
