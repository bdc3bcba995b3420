-- The application role could setval the entry and settlement sequences
-- back, after which every new entry or settlement would collide with an
-- old one's id and fail (no money moves, but the switch stops). Entry ids
-- are taken only inside the owner's posting functions; settlement ids by
-- ms_load_batch, for which nextval (USAGE) is enough.
REVOKE USAGE, UPDATE ON SEQUENCE entries_entry_id_seq FROM medswitch_app;
REVOKE UPDATE ON SEQUENCE settlement_seq FROM medswitch_app;
