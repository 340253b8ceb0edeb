"""One module per destination type; each turns batches into its vendor's API calls."""
