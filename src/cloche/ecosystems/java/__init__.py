"""Java: javac and java from the host JDK; Maven coordinates resolved by cloche's own resolver."""
