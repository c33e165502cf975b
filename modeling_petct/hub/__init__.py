"""Hub packaging: original-checkpoint conversion, Hub-ready model folders with remote code and model cards, the
Space folder, and uploads. The scripts in hub_scripts/ are thin command lines over these modules."""
