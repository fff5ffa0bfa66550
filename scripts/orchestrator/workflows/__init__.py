"""The three workflows: implement an issue, review a pull request, merge on `/merge`."""
