-- inbox pruning index

-- The relay deletes handled events older than the inbox retention, oldest first, in small
-- batches: a range of this index, not a scan of every event ever handled.
CREATE INDEX inbox_handled ON inbox (handled_at);
