-- A webhook endpoint's description is free text too: no card number in it, as a payment's
-- description (0080, whose `looks_like_card_number` this uses; the code's rule is
-- `looksLikeCardNumber`, checked first by packages/webhooks/src/Endpoints.ts with a 400 naming
-- `description`). A trigger on the column, like 0080's: every insert and every update that sets
-- the description, never another column's change; rows from before are not re-checked.
CREATE FUNCTION webhook_endpoints_refuse_card_data() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF looks_like_card_number(NEW.description) THEN
    RAISE EXCEPTION 'webhook_endpoints_no_card_data: webhook_endpoints.description looks like a card number (13 to 19 digits passing the Luhn check); card data must not be stored'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'webhook_endpoints_no_card_data', TABLE = 'webhook_endpoints', COLUMN = 'description';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER webhook_endpoints_card_data_refused BEFORE INSERT OR UPDATE OF description ON webhook_endpoints
  FOR EACH ROW EXECUTE FUNCTION webhook_endpoints_refuse_card_data();
