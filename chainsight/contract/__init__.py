"""The wire contract: input events and their decoder (`events`), user commands (`commands`),
times (`times`)."""
