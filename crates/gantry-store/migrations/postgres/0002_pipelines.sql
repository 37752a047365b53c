-- PostgreSQL port of migrations/sqlite/0002_pipelines.sql: INTEGER is BIGINT, BLOB is BYTEA,
-- AUTOINCREMENT is an identity column; JSON stays TEXT (documents come
-- back byte for byte).

-- CodePipeline's declaration side: pipelines and every version of their
-- declaration, disabled stage transitions, and webhooks. Executions live
-- in a later migration. Times are epoch milliseconds.

CREATE TABLE pipelines (
    name             TEXT PRIMARY KEY NOT NULL,
    -- The current version; its declaration is in pipeline_versions.
    version          BIGINT NOT NULL,
    -- CreatePipeline's tags, a JSON list of {key, value}.
    tags_json        TEXT NOT NULL DEFAULT '[]',
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);

-- Every version is kept: GetPipeline takes a version, and an execution
-- runs the version it started with.
CREATE TABLE pipeline_versions (
    pipeline         TEXT NOT NULL REFERENCES pipelines (name) ON DELETE CASCADE,
    version          BIGINT NOT NULL,
    -- The declaration as get-pipeline prints it, `version` included.
    declaration_json TEXT NOT NULL,
    -- V1 or V2, and QUEUED, SUPERSEDED or PARALLEL, as in effect for
    -- this version (defaults applied), for ListPipelines.
    pipeline_type    TEXT NOT NULL,
    execution_mode   TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    PRIMARY KEY (pipeline, version)
);

-- One row per disabled transition; a transition without a row is enabled.
CREATE TABLE stage_transitions (
    pipeline         TEXT NOT NULL REFERENCES pipelines (name) ON DELETE CASCADE,
    stage            TEXT NOT NULL,
    -- Inbound (into the stage) or Outbound (out of it).
    transition_type  TEXT NOT NULL,
    reason           TEXT NOT NULL,
    disabled_by      TEXT NOT NULL,
    disabled_ms      BIGINT NOT NULL,
    PRIMARY KEY (pipeline, stage, transition_type)
);

-- Webhooks outlive their pipeline, as the API lets them be put and
-- deleted on their own; a delivery to one whose pipeline is gone starts
-- nothing.
CREATE TABLE webhooks (
    name             TEXT PRIMARY KEY NOT NULL,
    -- The opaque last part of the webhook's URL; new for every webhook
    -- created, kept when it is put again.
    url_id           TEXT NOT NULL UNIQUE,
    pipeline         TEXT NOT NULL,
    -- The WebhookDefinition without the secret token.
    definition_json  TEXT NOT NULL,
    -- GITHUB_HMAC's SecretToken: XChaCha20-Poly1305 under the data
    -- directory's key file, with `webhook:<name>` as associated data.
    secret_nonce     BYTEA,
    secret_cipher    BYTEA,
    tags_json        TEXT NOT NULL DEFAULT '[]',
    registered       BIGINT NOT NULL DEFAULT 0,
    last_triggered_ms BIGINT,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);
CREATE INDEX webhooks_by_pipeline ON webhooks (pipeline);
