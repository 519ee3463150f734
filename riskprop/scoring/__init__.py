"""Initial risk scores from a bank's raw transactions: raw layouts, rules with explanations,
risk levels (``riskprop score``). Bank-local: nothing here talks to another bank."""
