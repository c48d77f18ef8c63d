-- credit ledger: estimates, reservations, settlements and per-user budgets

ALTER TABLE generations ADD COLUMN estimated_cost_credits int;

ALTER TABLE generations ADD COLUMN reserved_credits int NOT NULL DEFAULT 0
    CHECK (reserved_credits >= 0);

ALTER TABLE generations ADD COLUMN settled_cost_credits int;

-- One row per user and UTC day / UTC month: what is spent (settled) and still reserved.
-- A generation books both against the day and month it was requested in.
CREATE TABLE credit_usage (
    user_id text NOT NULL,
    period text NOT NULL CHECK (period IN ('day', 'month')),
    period_start date NOT NULL,
    spent bigint NOT NULL DEFAULT 0,
    reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (user_id, period, period_start)
);

-- An administrator's budgets for one user (NULL: unlimited); without a row, the settings'.
CREATE TABLE credit_budgets (
    user_id text PRIMARY KEY,
    daily_credits bigint CHECK (daily_credits >= 0),
    monthly_credits bigint CHECK (monthly_credits >= 0),
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
