-- Reverts V10__user_display_names.sql: the display names go (the default
-- ones can be derived again from the emails; names users chose are lost).
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_users_with_names_page(timestamptz, uuid, bigint);
ALTER TABLE users DROP CONSTRAINT users_display_name_valid;
DROP TRIGGER users_default_display_name ON users;
-- squawk-ignore ban-drop-function
DROP FUNCTION voidrunner_user_display_name();
-- squawk-ignore ban-drop-column
ALTER TABLE users DROP COLUMN display_name;
