"""azd hooks (azure.yaml): what `azd up` cannot do in Bicep, run on the deploying machine.

postprovision, before azd deploys the code:
  1. wait until the deploying principal's new roles work (Azure takes up to 10 minutes to
     make a role assignment effective; a deploy meanwhile fails on its package upload), and
  2. write the Twilio secrets into the vault, each only while it is absent, so a
     re-provision never puts an old token back over a rotation.
postdeploy:
  3. wait until the app answers /api/health, then
  4. when TWILIO_CONNECT_NUMBERS is set, point those Twilio numbers at the deployment.

azd passes its environment (.azure/<env>/.env and the deployment's outputs) as environment
variables. Every Azure call signs in as azd does (`azd auth login`), so the hooks act as the
principal azd deploys with. Secret values never appear in what the hooks print.
"""
