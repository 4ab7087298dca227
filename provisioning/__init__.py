"""Device provisioning: enrollment, keys, systemd units and kiosk set-up."""
