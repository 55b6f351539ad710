"""The proof: naive loop versions of every operation (reference) and the finite-difference checker
(gradcheck) the tests hold the layers and the whole model to."""
