-- An admin can set a temporary password (no mail server needed); until the user changes it, every API call
-- but /api/me and the auth library's change-password is refused (PASSWORD_CHANGE_REQUIRED).
ALTER TABLE "user" ADD COLUMN "mustChangePassword" BOOLEAN NOT NULL DEFAULT false;
