-- Finished logs are packed: the logs of the builds that ended together go
-- one after another into one object (`logs/packs/...`), so a busy server
-- writes an object per batch of builds rather than per build. A log is the
-- bytes `object_offset .. object_offset + size_bytes` of its object; the
-- logs archived before packing start at 0 of an object of their own.
ALTER TABLE build_log_archives ADD COLUMN object_offset INTEGER NOT NULL DEFAULT 0;
