-- What AAF found in an action besides the decision (issue 17): the detections over its
-- params and context (`[{detector, kind, path, confidence}]`) and, later, its risk score and
-- factors, as one JSON object. NULL for actions recorded before, or with nothing to say.
ALTER TABLE actions ADD COLUMN signals TEXT;

-- An organisation's outbound detection rules (`PATCH /v1/settings`, field
-- `outbound_detection`): `{"<detector, kind or default>": "record" | "mask" | "block"}` laid
-- over the server's `detection.outbound`; NULL for none.
ALTER TABLE org_settings ADD COLUMN outbound_detection TEXT;
