"""The few Hugging Face Hub endpoints the DAG's pre-flight reads, with the Hub's real answers."""
