"""Online ETAs: trip features (`features`), corridor lines (`routes`), the baseline
(`baseline`), the River model (`model`), samples awaiting their labels (`samples`) and the
accuracy of past ETAs (`accuracy`). The rule that drives them is `chainsight.rules.eta`."""
