"""A principal's rights over their data (GDPR articles 15, 17, 20): export it all, delete it all, and keep
personal data at rest sealed with a key of their own so deleting that key erases what backups still hold."""
